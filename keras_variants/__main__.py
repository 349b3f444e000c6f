from keras_variants.cli.main import main

if __name__ == "__main__":  # not when a lane process starts from it
    main()
