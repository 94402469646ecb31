"""The ``signlab`` tool: the runtime that starts the ecosystem and the commands that drive it."""
