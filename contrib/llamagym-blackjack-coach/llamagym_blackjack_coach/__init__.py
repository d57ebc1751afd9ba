"""llamagym plugin: a coach that shapes the blackjack agent's reward towards basic strategy."""
