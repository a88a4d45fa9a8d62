// Starts Swagger UI on /docs. A file, not inline: the Content-Security-Policy admits no inline script.
'use strict';
window.addEventListener('DOMContentLoaded', () => {
  const root = document.getElementById('swagger-ui');
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec, dom_id: '#swagger-ui', deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout',
  });
});
