"""Dynamic segments with stored, incrementally refreshed membership, and static lists."""
