"""The marketing console: staff sign in and run campaigns from the browser (`dripmail console`)."""
