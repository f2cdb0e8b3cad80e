"""The human side of Switchboard: routing, the agent queue, the console, examples from agent edits."""
