"""`buxiban plan`: do I need fine-tuning, and what would it cost? (see build.py)"""
