"""Reports over contacts, stages and activity: each a name and parameters giving typed rows,
served as JSON and CSV (``GET /api/reports/{name}``) and as ``ekiden report <name>``."""
