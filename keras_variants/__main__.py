from keras_variants.cli import main

main()
