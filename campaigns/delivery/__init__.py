"""Delivery: claim due emails, hand them to a sender, record what happened."""
