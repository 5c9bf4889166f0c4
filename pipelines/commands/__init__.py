"""One thin module per ``ovdistill`` project subcommand: parse arguments, call the library, print."""
