"""The local preview studio: live renders of a campaign folder."""
