from studio.cli.entry import main

main()
