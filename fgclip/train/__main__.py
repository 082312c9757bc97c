from fgclip.train.main import main

raise SystemExit(main())
