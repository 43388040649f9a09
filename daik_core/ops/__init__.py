"""daik_core.ops"""
