"""Code shared by returnloop's services: contract, domain, settings, logging."""
