"""returnloop's deployable services: tracker (stream processors), api, cli."""
