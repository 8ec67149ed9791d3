"""Tasks: reading local files, folders or the hub (:mod:`.files`), turning them into a checked :class:`~.tasks.Task`
with clear errors (:mod:`.tasks`), fixed samples of its rows (:mod:`.sampling`), and coreset selection
(:mod:`.coresets`)."""
