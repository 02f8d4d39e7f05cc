# nbgrader's settings for commands run from the course folder: `nbgrader validate` and
# JupyterLab's Validate button (`make lab` starts the server here). nbgrader's default per-cell
# timeout (30 s) is shorter than a quick-mode training cell (~100 s on a laptop CPU).
# `python -m dfcourse grade` passes its own --timeout and does not read this file.
c = get_config()  # noqa: F821
c.Execute.timeout = 600
