"""Placeholder: tasks are being written (see BUILTIN_TASK_MODULES in base.py)."""
