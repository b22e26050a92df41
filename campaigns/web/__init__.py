"""The public service: unsubscribe pages, the sign-up API and provider webhooks."""
