"""Forms: definitions, hosted and embedded rendering, submissions with consent evidence."""
