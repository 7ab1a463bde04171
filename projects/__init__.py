"""Research projects built on the library (`vivi`), each in a folder of its own."""
