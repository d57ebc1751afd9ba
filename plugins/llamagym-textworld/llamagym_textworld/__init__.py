"""llamagym plugin for TextWorld: games generated offline with TextWorld's own generator into a cache (env ids
`TextWorld-<challenge>-L<level>-s<seed>`), a game file of the user's (`TextWorld-game`), and the `textworld` agent."""
