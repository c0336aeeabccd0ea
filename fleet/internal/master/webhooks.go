package master

import (
	"github.com/chatfleet/chatfleet"
	"github.com/chatfleet/chatfleet/webhook"
)

// Webhook limits (docs/events.md).
const (
	minHookSecretLen = 16  // bytes
	maxHookSecretLen = 256 // bytes, of a room's webhookSecret
)

// validateWebhookURLs checks the operator's list of webhook URLs
// (WEBHOOK_URLS) as webhook.ValidateURLs does, private addresses allowed.
// It returns EINVALID naming the problem.
func validateWebhookURLs(what string, urls []string) error {
	if err := webhook.ValidateURLs(urls, true); err != nil {
		return chatfleet.Errorf(chatfleet.EINVALID, "%s: %v", what, err)
	}
	return nil
}
