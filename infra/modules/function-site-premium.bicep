// The function app on Elastic Premium (EP1-EP3), running the hub2lake custom
// handler. App settings (FUNCTIONS_WORKER_RUNTIME=custom, run-from-package URL read
// with the identity, ...) are applied by function-app.bicep.

param name string
param location string
param tags object = {}
param planId string

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 4

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: planId
    reserved: true
    httpsOnly: true
    siteConfig: {
      // The custom handler stack on Linux leaves linuxFxVersion empty.
      linuxFxVersion: ''
      use32BitWorkerProcess: false
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      minimumElasticInstanceCount: 1
      functionAppScaleLimit: maximumElasticWorkerCount
    }
  }
}

// No basic (username/password) publishing credentials: deployments upload the
// package blob with an Entra identity.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
