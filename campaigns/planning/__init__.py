"""Planning: contacts, enrollment and the pure time maths of when each email is due."""
