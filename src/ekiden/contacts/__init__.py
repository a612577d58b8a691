"""Contacts, accounts, identities, custom fields, consent, merge, import and export."""
