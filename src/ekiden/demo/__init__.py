"""``ekiden demo``: a realistic B2B demo on the embedded database, played in simulated time."""
