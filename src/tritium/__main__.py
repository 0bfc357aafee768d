from tritium.cli import main

raise SystemExit(main())
