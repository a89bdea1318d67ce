// Where mailcode is. serve.mjs --api URL serves its own config.js instead of this file;
// a ?api=URL query parameter on the page wins over both.
// Use the same host name as the page (both 127.0.0.1, or both localhost): see docs/integration.md.
window.MAILCODE_API = 'http://127.0.0.1:3000';
