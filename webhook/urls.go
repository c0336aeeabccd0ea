package webhook

import (
	"fmt"
	"net/url"

	"github.com/chatfleet/chatfleet/internal/netguard"
)

// Limits of a room's own webhook URLs (options.webhookUrls), which the
// control API checks at create and the host again (docs/events.md).
const (
	MaxURLs   = 5    // per room
	MaxURLLen = 1024 // bytes of one URL
)

// ValidateURLs checks a list of webhook URLs: at most MaxURLs absolute
// http(s) URLs of at most MaxURLLen bytes, without credentials (deliveries
// are signed), and, unless allowPrivate, none whose host is a literal
// address that is not public (a name is checked when it is dialled). The
// error names the problem, never a URL's query (it may hold a credential);
// callers add the field and the code.
func ValidateURLs(urls []string, allowPrivate bool) error {
	if len(urls) > MaxURLs {
		return fmt.Errorf("at most %d URLs", MaxURLs)
	}
	for _, s := range urls {
		if len(s) > MaxURLLen {
			return fmt.Errorf("a URL is longer than %d bytes", MaxURLLen)
		}
		u, err := netguard.HTTPURL(s, 0)
		if err != nil {
			return fmt.Errorf("%q is not an absolute http or https URL", RedactURL(s))
		}
		if u.User != nil {
			return fmt.Errorf("credentials in a URL are not allowed (deliveries are signed)")
		}
		if allowPrivate {
			continue
		}
		if err := netguard.CheckURLHost(s); err != nil {
			return fmt.Errorf("%q: %v: deliveries go to public addresses only", RedactURL(s), err)
		}
	}
	return nil
}

// RedactURL returns scheme://host/path of s, for logs and errors: its query
// may hold a credential.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	return u.Scheme + "://" + u.Host + u.Path
}
