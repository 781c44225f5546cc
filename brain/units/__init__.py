"""The units the brain can play: MLP neurons and the features of a sparse dictionary over them (issue 44)."""
