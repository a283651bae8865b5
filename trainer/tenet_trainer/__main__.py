from tenet_trainer.cli import main

raise SystemExit(main())
