"""llamagym plugin for TextArena: its offline games as llamagym envs (`TextArena-<game>`), one `textarena` agent
that plays any of them, and a `random-move` opponent for the two-player ones."""
