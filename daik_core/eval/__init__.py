"""daik_core.eval"""
