"""Small named checks composed per endpoint; each raises one specific OAuth error."""
