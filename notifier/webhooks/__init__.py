"""Producer callbacks (outbound webhooks): delivery and escalation outcomes POSTed to producers."""
