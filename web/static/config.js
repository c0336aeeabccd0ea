// Settings the server may provide. A deployment (or the local stack) can
// serve its own /config.js instead of this empty default:
//
//   window.CHATFLEET_CONFIG = { apiKey: "DEV_API_KEY", apiBase: "" };
//
// apiKey is sent as X-API-Key to the control API; apiBase is the API's
// origin when it is not this site. See docs/web.md.
window.CHATFLEET_CONFIG = window.CHATFLEET_CONFIG || {};
