"""Documents pages: uploading a file to a record, downloading it, withdrawing it, and the panel records show."""
