"""The dashboard: its pages (ui/, served at /ui/) and the /api JSON routes they poll: runs, live loss
curves, evaluations started in the background, data checks and the playground's model list."""
