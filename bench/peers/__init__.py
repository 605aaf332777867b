"""What the service is measured against: the same GET and PUT /users/{id}, written the way
each framework's own documentation writes it, each over a plain dict or list of users."""
