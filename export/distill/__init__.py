"""A small student distilled from the CAM teacher on the user's own footage: the recipe (student),
its training crops (data), and its network (net)."""
