"""The webhooks process: signed deliveries of loop transitions and alerts to receivers."""
