from resnet_cifar.cli import main

raise SystemExit(main())
