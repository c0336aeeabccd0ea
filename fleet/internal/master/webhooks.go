package master

import (
	"net/url"

	"github.com/chatfleet/chatfleet"
)

// Webhook limits (docs/events.md).
const (
	maxHookURLs      = 5    // per room
	maxHookURLLen    = 1024 // bytes
	minHookSecretLen = 16   // bytes
	maxHookSecretLen = 256  // bytes, of a room's webhookSecret
)

// validateWebhookURLs checks a list of webhook URLs: at most maxHookURLs
// absolute http(s) URLs of at most maxHookURLLen bytes, without credentials.
// It returns EINVALID naming the problem.
func validateWebhookURLs(what string, urls []string) error {
	if len(urls) > maxHookURLs {
		return chatfleet.Errorf(chatfleet.EINVALID, "%s: at most %d URLs", what, maxHookURLs)
	}
	for _, s := range urls {
		if len(s) > maxHookURLLen {
			return chatfleet.Errorf(chatfleet.EINVALID, "%s: a URL is longer than %d bytes", what, maxHookURLLen)
		}
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return chatfleet.Errorf(chatfleet.EINVALID, "%s: %q is not an absolute http or https URL", what, redactURL(s))
		}
		if u.User != nil {
			return chatfleet.Errorf(chatfleet.EINVALID, "%s: credentials in a URL are not allowed (deliveries are signed)", what)
		}
	}
	return nil
}

// redactURL returns scheme://host/path of s, for logs: a query may hold a
// credential.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
