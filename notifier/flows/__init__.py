"""Where the domains meet: processing an event, delivering, reconciling."""
