"""dtm: the data transfer monitor of the Vera C. Rubin Observatory."""
