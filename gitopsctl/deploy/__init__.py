"""The deploy engine: plan every edit from git, commit off the working tree, roll back.

Commands parse options and call in here; nothing here imports the CLI or the console.
"""
