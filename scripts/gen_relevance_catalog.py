"""Generate examples/relevance/catalog.jsonl: a few hundred realistic products over many categories.

The relevance set (``examples/relevance/labels.json``) pairs evaluation photos with catalog categories; this
catalog is what similarity search runs over when the gate is calibrated. It holds the 31 sample products of
``examples/catalog.jsonl`` (unchanged, including the prompt-injection one) plus generated products: for each
category a few kinds of product, each in several brands, colours and materials, with a one-sentence
description, deterministic for a seed. Near misses are on purpose: mopeds beside motorcycles, camera straps
beside tripods, posters of pagodas, cat beds beside cat photos.

    python scripts/gen_relevance_catalog.py            # writes examples/relevance/catalog.jsonl
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parents[1]

# category -> (sku prefix, [(kind, description with {color}/{material}/{size})], materials, sizes)
# fmt: off
CATEGORIES: dict[str, tuple[str, list[tuple[str, str]], list[str], list[str]]] = {
    "Kitchen > Coffee > Cups": ("CUP", [
        ("Espresso Cup", "A {size} espresso cup in {color} {material} with a matching saucer."),
        ("Cappuccino Cup", "A wide {material} cup for cappuccino and flat white, glazed {color}."),
        ("Coffee Mug", "A {size} {material} coffee mug in {color} with a comfortable handle."),
        ("Double-Wall Glass Cup", "A double-walled {material} cup that keeps coffee hot and hands cool; {size}."),
    ], ["porcelain", "stoneware", "ceramic", "borosilicate glass"], ["90 ml", "180 ml", "300 ml", "350 ml"]),
    "Kitchen > Coffee > Espresso Machines": ("ESP", [
        ("Espresso Machine", "A {color} pump espresso machine with a steam wand and a {size} water tank."),
        ("Stovetop Moka Pot", "A {material} moka pot that brews {size} of strong coffee on any hob."),
    ], ["stainless steel", "aluminium", "brushed steel"], ["1.2 l", "1.8 l", "6 cups", "3 cups"]),
    "Kitchen > Coffee > Grinders": ("GRN", [
        ("Burr Coffee Grinder", "An electric burr grinder with 40 settings from espresso to French press, in {color}."),
        ("Hand Coffee Mill", "A {material} hand mill with a ceramic burr for {size} of beans."),
    ], ["steel", "walnut and steel", "aluminium"], ["30 g", "50 g", "250 g"]),
    "Food > Coffee Beans": ("BEAN", [
        ("Whole Bean Coffee", "Medium roast whole beans with notes of cocoa and cherry; {size} bag."),
        ("Espresso Roast Beans", "A dark espresso roast for rich crema; {size} of whole beans."),
        ("Decaf Ground Coffee", "Swiss-water decaf, ground for filter brewing; {size}."),
    ], ["arabica", "robusta blend"], ["250 g", "500 g", "1 kg"]),
    "Kitchen > Tea > Teapots": ("TPT", [
        ("Teapot", "A {size} {material} teapot in {color} with a removable infuser."),
        ("Tea Kettle", "A {color} {material} whistling kettle for the stove; {size}."),
    ], ["cast iron", "porcelain", "glass", "enamel"], ["0.8 l", "1.2 l", "1.5 l"]),
    "Kitchen > Cookware > Frying Pans": ("PAN", [
        ("Frying Pan", "A {size} {material} frying pan with a riveted handle, oven safe."),
        ("Skillet", "A pre-seasoned {material} skillet, {size}, for searing and baking."),
    ], ["cast iron", "carbon steel", "non-stick aluminium", "stainless steel"], ["20 cm", "24 cm", "28 cm"]),
    "Kitchen > Cookware > Woks": ("WOK", [
        ("Wok", "A {size} {material} wok with a round base and a wooden handle."),
    ], ["carbon steel", "cast iron"], ["30 cm", "36 cm"]),
    "Kitchen > Appliances > Toasters": ("TST", [
        ("Toaster", "A {color} two-slice toaster with wide slots, a bagel setting and a crumb tray."),
        ("Four-Slice Toaster", "A {material} four-slice toaster in {color} with six browning levels."),
    ], ["stainless steel", "matte plastic"], ["2 slots", "4 slots"]),
    "Kitchen > Tableware > Bowls": ("BWL", [
        ("Serving Bowl", "A {size} {material} serving bowl glazed {color}."),
        ("Soup Bowl", "A deep {material} soup bowl in {color}, {size}."),
    ], ["stoneware", "porcelain", "bamboo"], ["16 cm", "22 cm", "600 ml"]),
    "Home > Clocks > Wall Clocks": ("WCL", [
        ("Wall Clock", "A silent {size} wall clock with a {color} {material} frame and clear numerals."),
        ("Station Clock", "A railway-style {size} wall clock in {color} {material}."),
    ], ["metal", "oak", "plastic", "brass"], ["25 cm", "30 cm", "40 cm"]),
    "Home > Clocks > Alarm Clocks": ("ACL", [
        ("Alarm Clock", "A {color} twin-bell alarm clock in {material} with a loud ring."),
        ("Digital Alarm Clock", "A {color} digital alarm clock with a dimmable display and USB charging."),
    ], ["metal", "plastic", "wood"], ["10 cm", "12 cm"]),
    "Home > Decor > Vases": ("VAS", [
        ("Vase", "A {size} {material} vase in {color} for fresh or dried flowers."),
    ], ["glass", "ceramic", "stoneware"], ["15 cm", "25 cm", "35 cm"]),
    "Home > Flowers > Bouquets": ("BQT", [
        ("Flower Bouquet", "A hand-tied bouquet of seasonal blooms in {color} tones, delivered fresh."),
        ("Dried Flower Bunch", "A bunch of dried flowers and grasses in {color}, {size} tall."),
    ], ["fresh", "dried"], ["40 cm", "50 cm"]),
    "Home > Lighting > Lamps": ("LMP", [
        ("Table Lamp", "A {material} table lamp with a {color} shade and a dimmable bulb."),
        ("Floor Lamp", "A {size} {material} floor lamp with an adjustable {color} head."),
    ], ["brass", "oak", "ceramic", "steel"], ["140 cm", "160 cm"]),
    "Home > Furniture > Chairs": ("CHR", [
        ("Dining Chair", "A {material} dining chair with a {color} upholstered seat."),
        ("Armchair", "A deep {color} armchair with a {material} frame."),
    ], ["oak", "beech", "steel", "rattan"], ["45 cm seat", "48 cm seat"]),
    "Home > Furniture > Sofas": ("SOF", [
        ("Three-Seat Sofa", "A {size} three-seat sofa upholstered in {color} {material}."),
    ], ["linen", "velvet", "leather"], ["210 cm", "230 cm"]),
    "Home > Textiles > Pillows": ("PLW", [
        ("Cushion", "A {size} {material} cushion in {color} with a hidden zip."),
    ], ["linen", "cotton", "velvet"], ["45 x 45 cm", "50 x 50 cm"]),
    "Home > Wall Art > Posters": ("PST", [
        ("Travel Poster", "A vintage-style travel poster in {color} tones, printed on {material}, {size}."),
        ("Botanical Print", "A botanical art print of wild flowers on {material}, {size}."),
        ("Space Poster", "A poster of a rocket launch at dawn on {material}, {size}."),
    ], ["matte paper", "archival paper"], ["50 x 70 cm", "30 x 40 cm"]),
    "Garden > Plants > Flowering Plants": ("PLT", [
        ("Potted Dahlia", "A flowering dahlia in a {size} nursery pot with {color} blooms all summer."),
        ("Potted Chrysanthemum", "A garden chrysanthemum covered in {color} flowers, {size} pot."),
        ("Daisy Plant", "A hardy daisy plant with {color} petals, {size} pot."),
    ], ["live plant"], ["12 cm", "15 cm", "19 cm"]),
    "Garden > Pots & Planters": ("POT", [
        ("Plant Pot", "A {size} {material} plant pot in {color} with a drainage hole."),
    ], ["terracotta", "ceramic", "recycled plastic"], ["14 cm", "20 cm", "30 cm"]),
    "Garden > Tools > Shovels": ("SHV", [
        ("Garden Spade", "A {material} garden spade with a {size} ash handle."),
    ], ["stainless steel", "carbon steel"], ["100 cm", "110 cm"]),
    "Garden > Tools > Lawn Mowers": ("MOW", [
        ("Cordless Lawn Mower", "A {color} cordless lawn mower with a {size} cutting width."),
        ("Push Reel Mower", "A quiet push reel mower with {material} blades, {size} cut."),
    ], ["steel", "hardened steel"], ["33 cm", "38 cm", "42 cm"]),
    "Electronics > Cameras > Tripods": ("TRI", [
        ("Travel Tripod", "A compact {material} travel tripod with a ball head, extends to {size}."),
        ("Video Tripod", "A {material} video tripod with a fluid head and spreader, {size} tall."),
    ], ["aluminium", "carbon fibre"], ["150 cm", "165 cm", "180 cm"]),
    "Electronics > Cameras > Film Cameras": ("FLM", [
        ("35 mm Film Camera", "A {color} 35 mm film camera with a {material} body and a 50 mm lens."),
        ("Medium Format Camera", "A medium format film camera in {color} with a waist-level finder."),
    ], ["metal", "leatherette and metal"], ["35 mm", "120 film"]),
    "Electronics > Cameras > Digital Cameras": ("DCM", [
        ("Mirrorless Camera", "A {color} mirrorless camera with a 24 MP sensor and a kit zoom."),
        ("Compact Camera", "A pocket compact camera in {color} with a 10x zoom lens."),
    ], ["magnesium alloy", "plastic"], ["24 MP", "20 MP"]),
    "Electronics > Cameras > Accessories": ("CAC", [
        ("Camera Strap", "A {material} camera strap in {color}, {size} long."),
        ("Camera Bag", "A padded {material} camera bag in {color} with dividers."),
    ], ["leather", "canvas", "nylon"], ["100 cm", "120 cm"]),
    "Electronics > Audio > Microphones": ("MIC", [
        ("USB Microphone", "A {color} USB condenser microphone with a desk stand."),
    ], ["metal"], ["16 cm"]),
    "Electronics > Audio > Speakers": ("SPK", [
        ("Bluetooth Speaker", "A {color} portable speaker with {size} of battery and a {material} grille."),
    ], ["fabric", "aluminium"], ["12 hours", "20 hours"]),
    "Electronics > Computers > Laptops": ("LAP", [
        ("Laptop", "A {size} laptop in {color} {material} with 16 GB of memory."),
    ], ["aluminium", "magnesium"], ["13 inch", "14 inch", "16 inch"]),
    "Electronics > Computers > Keyboards": ("KBD", [
        ("Mechanical Keyboard", "A {color} mechanical keyboard with tactile switches and a {material} case."),
    ], ["aluminium", "plastic"], ["full size", "tenkeyless"]),
    "Electronics > Optics > Binoculars": ("BIN", [
        ("Binoculars", "{size} binoculars with a {color} {material} body for birdwatching."),
    ], ["rubber-armoured", "magnesium"], ["8x42", "10x42", "8x25"]),
    "Vehicles > Motorcycles": ("MCY", [
        ("Sport Motorcycle", "A {size} sport motorcycle in {color} with ABS and a slipper clutch."),
        ("Naked Roadster Motorcycle", "A {size} naked roadster motorcycle in {color}, upright and agile."),
        ("Touring Motorcycle", "A {size} touring motorcycle in {color} with panniers and cruise control."),
    ], ["steel frame", "aluminium frame"], ["650 cc", "900 cc", "1200 cc"]),
    "Vehicles > Scooters & Mopeds": ("MOP", [
        ("City Moped", "A light moped for city commuting, in {color}, {size}."),
        ("Electric Scooter", "A {color} electric motor scooter with a removable battery and {size} range."),
    ], ["steel frame"], ["50 cc", "70 km", "45 km"]),
    "Vehicles > Bicycles": ("BIK", [
        ("City Bike", "A {color} city bike with a {material} frame, mudguards and a rack."),
        ("Mountain Bike", "A {color} hardtail mountain bike with a {material} frame and {size} wheels."),
    ], ["steel", "aluminium"], ["27.5 inch", "29 inch"]),
    "Vehicles > Go-Karts": ("KRT", [
        ("Pedal Go-Kart", "A {color} pedal go-kart for children with a {material} frame."),
    ], ["steel"], ["3-8 years"]),
    "Sports > Winter > Sleds": ("SLD", [
        ("Snow Sled", "A {color} {material} snow sled with steering and brakes."),
    ], ["plastic", "wood"], ["100 cm"]),
    "Sports > Winter > Skis": ("SKI", [
        ("All-Mountain Skis", "{size} all-mountain skis in {color} with a {material} core."),
    ], ["wood", "carbon"], ["160 cm", "170 cm"]),
    "Sports > Balls": ("BAL", [
        ("Football", "A match football in {color}, size {size}, with a {material} cover."),
        ("Basketball", "An indoor and outdoor basketball, size {size}, {material}."),
    ], ["synthetic leather", "rubber"], ["5", "7"]),
    "Sports > Fitness > Dumbbells": ("DMB", [
        ("Dumbbell Pair", "A pair of {size} {material} dumbbells in {color}."),
    ], ["cast iron", "neoprene-coated"], ["2 kg", "5 kg", "10 kg"]),
    "Fashion > Uniforms > Military": ("UNI", [
        ("Navy Service Uniform", "A replica navy service uniform jacket in {color} {material} with brass buttons."),
        ("Dress Uniform Costume", "A military dress uniform costume in {color} with epaulettes and a cap."),
    ], ["wool", "polyester"], ["S", "M", "L"]),
    "Fashion > Graduation": ("GRD", [
        ("Graduation Gown and Cap", "A {color} graduation gown with a mortarboard cap and tassel, size {size}."),
    ], ["polyester"], ["S", "M", "L"]),
    "Fashion > Accessories > Ties": ("TIE", [
        ("Silk Tie", "A {color} {material} tie, hand finished, {size} wide."),
        ("Bow Tie", "A pre-tied {color} {material} bow tie with an adjustable strap."),
    ], ["silk", "wool", "cotton"], ["7 cm", "8 cm"]),
    "Fashion > Outerwear > Jackets": ("JKT", [
        ("Rain Jacket", "A {color} waterproof rain jacket in {material} with a hood."),
        ("Denim Jacket", "A classic {color} denim jacket, size {size}."),
    ], ["recycled nylon", "cotton"], ["S", "M", "L", "XL"]),
    "Fashion > Shoes > Sandals": ("SDL", [
        ("Leather Sandals", "{color} {material} sandals with a cushioned footbed, EU {size}."),
    ], ["leather", "suede"], ["38", "40", "42"]),
    "Toys > Models > Space": ("MDL", [
        ("Rocket Model Kit", "A snap-together {size} scale model of a launch rocket in {color} and white."),
        ("Space Shuttle Model", "A die-cast {size} space shuttle model on a display stand."),
    ], ["plastic", "die-cast metal"], ["1:144", "1:200", "1:72"]),
    "Toys > Plush": ("PLU", [
        ("Teddy Bear", "A soft {color} teddy bear in {material}, {size} tall."),
        ("Plush Cat", "A cuddly plush cat in {color} {material}, {size} long."),
    ], ["plush", "organic cotton"], ["25 cm", "40 cm"]),
    "Pets > Cats > Beds": ("CBD", [
        ("Cat Bed", "A round {color} {material} cat bed with a raised rim, {size} across."),
    ], ["felt", "faux fur", "cotton"], ["45 cm", "55 cm"]),
    "Pets > Cats > Toys": ("CTY", [
        ("Cat Teaser Wand", "A cat teaser wand with {color} feathers and a bell."),
        ("Catnip Mouse", "A {material} catnip mouse toy in {color}, pack of {size}."),
    ], ["felt", "cotton"], ["3", "6"]),
    "Pets > Dogs > Leashes": ("DLS", [
        ("Dog Leash", "A {size} {material} dog leash in {color} with a padded handle."),
    ], ["nylon", "leather"], ["1.2 m", "2 m"]),
    "Outdoor > Camping > Tents": ("TNT", [
        ("Backpacking Tent", "A {size} backpacking tent in {color} {material}, freestanding."),
    ], ["ripstop nylon", "polyester"], ["1-person", "2-person", "3-person"]),
    "Outdoor > Hiking > Backpacks": ("BPK", [
        ("Hiking Backpack", "A {size} hiking backpack in {color} {material} with a rain cover."),
    ], ["ripstop nylon", "canvas"], ["20 l", "30 l", "45 l"]),
    "Travel > Luggage > Suitcases": ("SUI", [
        ("Cabin Suitcase", "A {color} {material} cabin suitcase on four spinner wheels, {size}."),
    ], ["polycarbonate", "aluminium"], ["35 l", "40 l"]),
    "Books > Space": ("BK", [
        ("Astronomy Book", "An illustrated {size} book about the Moon, stars and galaxies for stargazers."),
        ("Spaceflight History Book", "A {size} history of human spaceflight, from the first rockets to the shuttle."),
    ], ["hardcover", "paperback"], ["224-page", "320-page"]),
}
# fmt: on
BRANDS = [
    "Hollowell",
    "Northlane",
    "Ridgeback",
    "Oakhaven",
    "Steadyline",
    "Kessel",
    "Clearwater",
    "Redline",
    "Marlow",
    "Fenwick",
    "Alder & Co",
    "Brightside",
    "Tidewater",
    "Copperleaf",
    "Quarry",
    "Vantage",
]
COLORS = [
    "matte black",
    "white",
    "navy blue",
    "forest green",
    "red",
    "grey",
    "sand beige",
    "sky blue",
    "mustard yellow",
    "charcoal",
    "terracotta",
    "silver",
    "pink",
    "orange",
]


def generate(per_kind: int = 3, seed: int = 15) -> list[dict[str, object]]:
    """Products for every category: ``per_kind`` variants of each kind, deterministic for ``seed``."""
    rng = random.Random(seed)
    out: list[dict[str, object]] = []
    for category, (prefix, kinds, materials, sizes) in CATEGORIES.items():
        n = 0
        for kind, template in kinds:
            for _ in range(per_kind):
                n += 1
                brand, color = rng.choice(BRANDS), rng.choice(COLORS)
                material, size = rng.choice(materials), rng.choice(sizes)
                out.append(
                    {
                        "sku": f"{prefix}-{n:03d}",
                        "title": f"{brand} {kind}",
                        "brand": brand,
                        "category": category,
                        "attributes": {"color": color, "material": material, "size": size},
                        "description": template.format(color=color, material=material, size=size),
                        "locale": "en-US",
                    }
                )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=ROOT / "examples" / "catalog.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "relevance" / "catalog.jsonl")
    parser.add_argument("--per-kind", type=int, default=3)
    parser.add_argument("--seed", type=int, default=15)
    args = parser.parse_args(argv)
    base = [json.loads(line) for line in args.base.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = base + generate(args.per_kind, args.seed)
    skus = [row["sku"] for row in rows]
    if len(set(skus)) != len(skus):
        raise SystemExit("duplicate skus")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} products ({len(base)} from {args.base.name}) to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
