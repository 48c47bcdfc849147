"""The bundled demo's teacher, student and clip (`python -m edge_cam_export.demo`, build.py): scenes,
networks, training, clip and score."""
