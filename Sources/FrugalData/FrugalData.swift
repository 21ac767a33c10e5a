// FrugalData: data sets, loaders, augmentation, long-tail, federated partitions, tokenizers.
