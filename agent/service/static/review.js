// The review page's behaviour. A file, not inline: the Content-Security-Policy admits no inline script.
'use strict';

function imageUnavailable(img) {
  img.replaceWith(Object.assign(document.createElement('p'), {className: 'muted', textContent: 'image unavailable'}));
}

// Error events do not bubble: listen in the capture phase; images that failed before this ran are swept below.
document.addEventListener('error', (event) => {
  if (event.target instanceof HTMLImageElement && event.target.closest('section.item')) imageUnavailable(event.target);
}, true);
document.addEventListener('DOMContentLoaded', () => {
  for (const img of document.querySelectorAll('section.item img')) {
    if (img.complete && img.naturalWidth === 0) imageUnavailable(img);
  }
});

document.addEventListener('click', async (event) => {
  const button = event.target.closest('button[data-verdict]');
  if (!button) return;
  const section = button.closest('.item'), status = section.querySelector('.status');
  const verdict = button.dataset.verdict;
  const body = {review_id: section.dataset.reviewId, verdict,
                reviewer: document.getElementById('reviewer').value, note: section.querySelector('.note').value};
  if (verdict === 'edit') body.text = section.querySelector('.edit-text').value;
  status.className = 'status'; status.textContent = 'saving…';
  const reply = await fetch('/review/decisions', {method: 'POST', credentials: 'same-origin',
    headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  const data = await reply.json().catch(() => ({}));
  if (reply.ok) { section.classList.add('done'); status.textContent = 'recorded: ' + data.verdict; }
  else { status.className = 'status error';
         status.textContent = (data.error ? data.error.message + ' ' + data.error.fix : 'HTTP ' + reply.status)
           + (data.error && data.error.suggestion ? ' The policy would publish: "' + data.error.suggestion + '"' : ''); }
});
