"""Email: templates, personalisation, composition, tracking links, machine activity, consent
and unsubscribe. docs/EMAIL.md describes it for marketers."""
