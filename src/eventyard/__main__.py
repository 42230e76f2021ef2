from eventyard.cli import main

main()
