"""The contract, `users.yaml`, shipped as package data; `released/` stays in the repo."""
