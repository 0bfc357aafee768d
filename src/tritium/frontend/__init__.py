"""The .tri front end: source files, lexer, parser, AST and diagnostics."""
